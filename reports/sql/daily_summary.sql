-- Daily summary
--
-- One row per day: visitors counted, their median and mean dwell time in seconds, how many
-- videos were processed and how many of those failed. Days with videos but no visitors show 0.
-- A day is the recording day of the video (the `date` partition, from the video's start time).
--
-- Parameters: $from, $to (DATE, inclusive) and $camera (camera id); NULL means no filter.
-- The chart is a trend, drawn only when the period has two days with video or more (min_x=2).
-- @chart: line x=date y=visitors ylabel=visitors min_x=2
-- @caption: Visitors counted on each day of the period with video, one point per day. Follow
--   the line for the trend; a day far below its neighbours was either quiet or lost some video
--   (see Failed videos below).
-- @order: 10

WITH v AS (
    SELECT *
    FROM videos
    WHERE in_period(date, camera, $from, $to, $camera)
),
per_day_videos AS (
    SELECT
        date,
        count(*) AS videos_processed,
        count(*) FILTER (WHERE status = 'failed') AS videos_failed
    FROM v
    GROUP BY date
),
per_day_visitors AS (
    SELECT
        p.date,
        count(*) AS visitors,
        median(p.dwell_s) AS median_dwell_s,
        avg(p.dwell_s) AS mean_dwell_s
    FROM visitors AS p
    WHERE ($from IS NULL OR p.date >= $from)
      AND ($to IS NULL OR p.date <= $to)
      AND ($camera IS NULL OR p.camera = $camera)
    GROUP BY p.date
)
SELECT
    d.date,
    coalesce(p.visitors, 0) AS visitors,
    round(p.median_dwell_s, 1) AS median_dwell_s,
    round(p.mean_dwell_s, 1) AS mean_dwell_s,
    d.videos_processed,
    d.videos_failed
FROM per_day_videos AS d
LEFT JOIN per_day_visitors AS p USING (date)
ORDER BY d.date
