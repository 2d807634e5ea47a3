-- Attention by hour of the day
--
-- Per hour of the day (local wall-clock time of the moment a visitor was first seen), summed
-- over the selected days: visitors, watchers (visitors who faced the camera for at least the
-- analysis setting attention.min_watch_s in all), passers-by (the others), the attention rate
-- (watchers in percent of visitors) and the mean attention time (`attention_s`: seconds
-- facing the camera, the analysed frames whose head pose was within attention.max_yaw_deg and
-- max_pitch_deg). Visitors analysed before attention was read (attention_s NULL) are left out;
-- hours without such visitors too.
--
-- Parameters: $from, $to (DATE, inclusive) and $camera (camera id); NULL means no filter.
-- @chart: bar x=hour y=attention_rate_pct xlabel=hour_of_the_day ylabel=watchers_(%_of_visitors)
-- @caption: The share of each hour's visitors who looked at the kiosk for a moment or longer
--   (watchers) rather than passing by, added up over every day of the period. Whether someone
--   looked is judged from which way their head pointed, not from their eyes.
-- @order: 37

SELECT
    hour(start_time) AS hour,
    count(*) AS visitors,
    count(*) FILTER (WHERE watcher) AS watchers,
    count(*) FILTER (WHERE NOT watcher) AS passers_by,
    round(100.0 * count(*) FILTER (WHERE watcher) / count(*), 1) AS attention_rate_pct,
    round(avg(attention_s), 1) AS mean_attention_s
FROM visitors
WHERE attention_s IS NOT NULL
  AND in_period(date, camera, $from, $to, $camera)
GROUP BY hour
ORDER BY hour
