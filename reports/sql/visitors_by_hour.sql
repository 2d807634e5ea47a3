-- Visitors by hour of the day
--
-- How many visitors each camera saw in each hour of the day (local wall-clock time of the
-- moment a visitor was first seen), summed over the selected days, with their mean dwell time.
-- Hours without visitors are left out.
--
-- Parameters: $from, $to (DATE, inclusive) and $camera (camera id); NULL means no filter.
-- @chart: bar x=hour y=visitors series=camera xlabel=hour_of_the_day ylabel=visitors
-- @caption: How many visitors arrived in each hour of the day, added up over every day of the
--   period, one bar per camera (9 is 09:00 to 10:00). The tallest bars are the busy hours;
--   an hour without a bar had no visitors.
-- @order: 20

SELECT
    camera,
    hour(start_time) AS hour,
    count(*) AS visitors,
    round(avg(dwell_s), 1) AS mean_dwell_s
FROM visitors
WHERE in_period(date, camera, $from, $to, $camera)
GROUP BY camera, hour
ORDER BY camera, hour
