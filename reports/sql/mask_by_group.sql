-- Mask status by broad age group and gender
--
-- Visitors per broad age band and gender (the six groups of the work the project grew from),
-- split by the mask status the model read over their frames: with_mask, with_incorrect_mask,
-- without_mask; 18 classes in all. Bands are computed from `age` as in age_gender_broad
-- (band_table in _macros.sql). Visitors analysed by a model without a mask head (mask NULL)
-- are left out; every group is listed, with 0 where nobody falls in it.
--
-- Parameters: $from, $to (DATE, inclusive), $camera (camera id), NULL = no filter;
-- $broad_age_bands.
-- @chart: bar x=group y=with_mask,with_incorrect_mask,without_mask xlabel=age_group_and_gender ylabel=visitors
-- @caption: Visitors in each broad age group, women and men apart, by whether they wore a mask,
--   wore it wrongly (below the nose, say) or wore none, as the camera saw them.
-- @order: 32

WITH people AS (
    SELECT age, gender, mask
    FROM visitors
    WHERE mask IS NOT NULL
      AND in_period(date, camera, $from, $to, $camera)
),
groups AS (
    SELECT b.*, g.gender, g.gender_no
    FROM band_table($broad_age_bands) AS b
    CROSS JOIN (VALUES ('female', 1), ('male', 2)) AS g(gender, gender_no)
)
SELECT
    groups.band,
    groups.gender,
    groups.band || ' ' || groups.gender AS "group",
    count(people.mask) FILTER (WHERE people.mask = 'with_mask') AS with_mask,
    count(people.mask) FILTER (WHERE people.mask = 'with_incorrect_mask') AS with_incorrect_mask,
    count(people.mask) FILTER (WHERE people.mask = 'without_mask') AS without_mask,
    count(people.mask) AS visitors
FROM groups
LEFT JOIN people
    ON in_band(people.age, groups.lo, groups.hi) AND people.gender = groups.gender
GROUP BY groups.band_no, groups.band, groups.gender_no, groups.gender
ORDER BY groups.band_no, groups.gender_no
