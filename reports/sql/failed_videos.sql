-- Failed videos
--
-- Every video whose latest analysis failed, with the one-line reason the job recorded. The
-- remedy is usually in the error; rerunning the analysis for that day retries them.
--
-- Parameters: $from, $to (DATE, inclusive) and $camera (camera id); NULL means no filter.
-- @caption: Videos that could not be analysed, with the reason. Their visitors are missing from
--   every figure above; rerunning the analysis of that day tries them again.
-- @order: 51

SELECT
    date,
    camera,
    video,
    error,
    timezone('UTC', processed_at) AS processed_at_utc  -- the job's clock; the other times are the site's
FROM videos
WHERE status = 'failed'
  AND in_period(date, camera, $from, $to, $camera)
ORDER BY date, camera, video
