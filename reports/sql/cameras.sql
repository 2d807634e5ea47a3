-- Cameras compared
--
-- One row per camera: visitors, their median dwell time in seconds, the share of them read as
-- female (percent of the camera's visitors), and the videos analysed and failed. Cameras with
-- videos but no visitors show 0 visitors. The chart is drawn only with two cameras or more
-- (min_x=2): with one camera there is nothing to compare.
--
-- Parameters: $from, $to (DATE, inclusive) and $camera (camera id); NULL means no filter.
-- @chart: bar x=camera y=visitors,median_dwell_s,female_pct panels min_x=2
-- @caption: Each camera side by side: how many visitors it saw, how long they typically stayed
--   (half stayed longer, half shorter) and the share of them read as women. A camera with far
--   fewer visitors than the others may have been off or badly placed for part of the period.
-- @order: 15

WITH v AS (
    SELECT camera, count(*) AS videos, count(*) FILTER (WHERE status = 'failed') AS videos_failed
    FROM videos
    WHERE in_period(date, camera, $from, $to, $camera)
    GROUP BY camera
),
p AS (
    SELECT
        camera,
        count(*) AS visitors,
        median(dwell_s) AS median_dwell_s,
        100.0 * count(*) FILTER (WHERE gender = 'female') / count(*) AS female_pct
    FROM visitors
    WHERE in_period(date, camera, $from, $to, $camera)
    GROUP BY camera
)
SELECT
    v.camera,
    coalesce(p.visitors, 0) AS visitors,
    round(p.median_dwell_s, 1) AS median_dwell_s,
    round(p.female_pct, 1) AS female_pct,
    v.videos,
    v.videos_failed
FROM v
LEFT JOIN p USING (camera)
ORDER BY v.camera
