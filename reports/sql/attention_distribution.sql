-- How long visitors looked
--
-- A histogram of attention time: visitors per bucket of `attention_s` (seconds facing the
-- camera: the analysed frames whose head pose was within the analysis settings
-- attention.max_yaw_deg and max_pitch_deg, one frame interval each, as dwell_s counts them)
-- and each bucket's share of those visitors. $attention_buckets lists the buckets' lower edges
-- in seconds, ascending; a bucket runs from its edge up to (not including) the next one, and
-- the last is open-ended. The default is [0, 1, 2, 5, 10, 30, 60] (`--attention-buckets`).
-- Every bucket is listed, with 0 where no visitor falls in it; visitors analysed before
-- attention was read (attention_s NULL) are left out.
--
-- Parameters: $from, $to (DATE, inclusive), $camera (camera id), NULL = no filter;
-- $attention_buckets.
-- @chart: bar x=bucket y=visitors xlabel=time_facing_the_kiosk ylabel=visitors
-- @caption: How long visitors looked towards the kiosk while they were in front of it: each bar
--   counts the visitors whose time facing it fell in that range. The first bar holds those who
--   passed by without looking; compare with how long visitors stayed.
-- @order: 41

WITH buckets AS (SELECT * FROM second_buckets($attention_buckets)),
people AS (
    SELECT attention_s
    FROM visitors
    WHERE attention_s IS NOT NULL
      AND in_period(date, camera, $from, $to, $camera)
)
SELECT
    buckets.bucket,
    count(people.attention_s) AS visitors,
    round(100.0 * count(people.attention_s) / nullif((SELECT count(*) FROM people), 0), 1)
        AS share_pct
FROM buckets
LEFT JOIN people
    ON people.attention_s >= buckets.lo
   AND (buckets.hi IS NULL OR people.attention_s < buckets.hi)
GROUP BY buckets.bucket_no, buckets.bucket
ORDER BY buckets.bucket_no
