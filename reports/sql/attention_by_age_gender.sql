-- Attention by age group and gender
--
-- Per age band (the site's bands, $age_bands, computed from `age` as in age_gender) and
-- gender: visitors, watchers (visitors who faced the camera for at least the analysis setting
-- attention.min_watch_s in all), the attention rate (watchers in percent of visitors; NULL
-- without visitors) and the mean attention time in seconds (`attention_s`). Visitors analysed
-- before attention was read (attention_s NULL) are left out; every band and gender is listed,
-- with 0 where nobody falls in it.
--
-- Parameters: $from, $to (DATE, inclusive), $camera (camera id), NULL = no filter; $age_bands.
-- @chart: bar x=band y=attention_rate_pct series=gender xlabel=age_group_(years) ylabel=watchers_(%_of_visitors)
-- @caption: For each age group, the share of women and of men who looked at the kiosk for a
--   moment or longer rather than passing by. Groups with few visitors swing widely: compare
--   the visitors column before reading much into one bar.
-- @order: 38

WITH people AS (
    SELECT age, gender, watcher, attention_s
    FROM visitors
    WHERE attention_s IS NOT NULL
      AND in_period(date, camera, $from, $to, $camera)
),
groups AS (
    SELECT b.*, g.gender, g.gender_no
    FROM band_table($age_bands) AS b
    CROSS JOIN (VALUES ('female', 1), ('male', 2)) AS g(gender, gender_no)
)
SELECT
    groups.band,
    groups.gender,
    count(people.age) AS visitors,
    count(people.age) FILTER (WHERE people.watcher) AS watchers,
    round(
        100.0 * count(people.age) FILTER (WHERE people.watcher) / nullif(count(people.age), 0), 1
    ) AS attention_rate_pct,
    round(avg(people.attention_s), 1) AS mean_attention_s
FROM groups
LEFT JOIN people
    ON in_band(people.age, groups.lo, groups.hi) AND people.gender = groups.gender
GROUP BY groups.band_no, groups.band, groups.gender_no, groups.gender
ORDER BY groups.band_no, groups.gender_no
