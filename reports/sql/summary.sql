-- Summary
--
-- One row for the top of the report: the period and cameras covered, visitors, their median
-- dwell time, the shares of visitors read as female and male, the busiest hour of the day, the
-- largest age band, the videos analysed and failed, and the model versions that analysed them.
--
-- The period is $from to $to where given, else the first and last day with a video; `days`
-- counts the days with at least one video, `cameras` the cameras with one (or the $camera asked
-- for). Shares are percent of all visitors. The busiest hour (of `start_time`, the site's clock)
-- and the largest band go to the earliest hour and the first band on a tie; both are NULL
-- without visitors. Bands are those of the age_gender report ($age_bands, through the
-- age_gender_by_bands macro of _macros.sql). `model_versions` lists the `model_version` of the
-- videos analysed without failure.
--
-- Parameters: $from, $to (DATE, inclusive), $camera (camera id), NULL = no filter; $age_bands.
-- @layout: summary
-- @caption: The period and cameras this report covers, and its main figures.
-- @order: 1

WITH v AS (
    SELECT *
    FROM videos
    WHERE in_period(date, camera, $from, $to, $camera)
),
p AS (
    SELECT *
    FROM visitors
    WHERE in_period(date, camera, $from, $to, $camera)
),
busiest AS (
    SELECT hour(start_time) AS hour, count(*) AS visitors
    FROM p
    GROUP BY 1
    ORDER BY visitors DESC, hour
    LIMIT 1
),
largest AS (
    SELECT band, visitors
    FROM age_gender_by_bands($age_bands, $from, $to, $camera)
    WHERE visitors > 0
    ORDER BY visitors DESC, list_position($age_bands, band)
    LIMIT 1
)
SELECT
    coalesce($from, (SELECT min(date) FROM v)) AS period_from,
    coalesce($to, (SELECT max(date) FROM v)) AS period_to,
    (SELECT count(DISTINCT date) FROM v) AS days,
    CASE
        WHEN $camera IS NOT NULL THEN [$camera]
        ELSE coalesce((SELECT list(DISTINCT camera ORDER BY camera) FROM v), [])
    END AS cameras,
    (SELECT count(*) FROM p) AS visitors,
    (SELECT round(median(dwell_s), 1) FROM p) AS median_dwell_s,
    (SELECT round(100.0 * count(*) FILTER (WHERE gender = 'female') / nullif(count(*), 0), 1)
     FROM p) AS female_pct,
    (SELECT round(100.0 * count(*) FILTER (WHERE gender = 'male') / nullif(count(*), 0), 1)
     FROM p) AS male_pct,
    (SELECT hour FROM busiest) AS busiest_hour,
    (SELECT visitors FROM busiest) AS busiest_hour_visitors,
    (SELECT band FROM largest) AS largest_age_band,
    (SELECT visitors FROM largest) AS largest_age_band_visitors,
    (SELECT count(*) FROM v) AS videos,
    (SELECT count(*) FILTER (WHERE status = 'failed') FROM v) AS videos_failed,
    coalesce(
        (SELECT list(DISTINCT model_version ORDER BY model_version) FROM v WHERE status = 'ok'),
        []
    ) AS model_versions
