-- Data quality
--
-- Per day and camera: videos processed, ok and failed, frames decoded and analysed, the share
-- of decoded frames that were analysed, faces detected, visitors kept and tracks dropped by the
-- tracking thresholds (too short or too small to trust), hours of video and processing time.
-- The failed videos themselves, with their errors, are listed by the `failed_videos` report.
--
-- Parameters: $from, $to (DATE, inclusive) and $camera (camera id); NULL means no filter.
-- @chart: bar x=date y=visitors,visitors_dropped ylabel=people_seen
-- @caption: For each day, the visitors counted beside the faces seen too briefly or too small
--   to count as a visitor (dropped). Many dropped beside few counted can mean a camera that is
--   badly placed or needs its lens cleaned.
-- @order: 50

SELECT
    date,
    camera,
    count(*) AS videos,
    count(*) FILTER (WHERE status = 'ok') AS videos_ok,
    count(*) FILTER (WHERE status = 'failed') AS videos_failed,
    CAST(sum(frames_decoded) AS BIGINT) AS frames_decoded,
    CAST(sum(frames_analysed) AS BIGINT) AS frames_analysed,
    round(100.0 * sum(frames_analysed) / nullif(sum(frames_decoded), 0), 1) AS analysed_pct,
    CAST(sum(faces_detected) AS BIGINT) AS faces_detected,
    CAST(sum(visitors) AS BIGINT) AS visitors,
    CAST(sum(visitors_dropped) AS BIGINT) AS visitors_dropped,
    round(sum(duration_s) / 3600.0, 2) AS video_h,
    round(sum(processing_s), 1) AS processing_s
FROM videos
WHERE in_period(date, camera, $from, $to, $camera)
GROUP BY date, camera
ORDER BY date, camera
