-- How long visitors stayed
--
-- A histogram of how long visitors stayed in front of the kiosk: visitors per dwell-time bucket
-- and each bucket's share of all visitors. $dwell_buckets lists the buckets' lower edges in
-- seconds, ascending; a bucket runs from its edge up to (not including) the next one, and the
-- last is open-ended. The default is [0, 5, 10, 30, 60, 120, 300, 600] (`--dwell-buckets`).
-- Every bucket is listed, with 0 where no visitor falls in it; a dwell below the first edge is
-- in no bucket and left out.
--
-- Parameters: $from, $to (DATE, inclusive), $camera (camera id), NULL = no filter; $dwell_buckets.
-- @chart: bar x=bucket y=visitors xlabel=time_in_front_of_the_kiosk ylabel=visitors
-- @caption: How long visitors stayed in front of the kiosk: each bar counts the visitors whose
--   stay fell in that time range, from the shortest stays on the left to the longest on the
--   right. Passers-by make the bars on the left; visitors who used the kiosk, those further
--   right.
-- @order: 40

WITH buckets AS (SELECT * FROM second_buckets($dwell_buckets)),
people AS (
    SELECT dwell_s
    FROM visitors
    WHERE in_period(date, camera, $from, $to, $camera)
)
SELECT
    buckets.bucket,
    count(people.dwell_s) AS visitors,
    round(100.0 * count(people.dwell_s) / nullif((SELECT count(*) FROM people), 0), 1)
        AS share_pct
FROM buckets
LEFT JOIN people
    ON people.dwell_s >= buckets.lo
   AND (buckets.hi IS NULL OR people.dwell_s < buckets.hi)
GROUP BY buckets.bucket_no, buckets.bucket
ORDER BY buckets.bucket_no
