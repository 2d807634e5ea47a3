-- Mood by age group
--
-- Visitors per age band (the site's bands, $age_bands, computed from `age` as in age_gender) by
-- the emotion the model read most strongly over their frames, grouped as in mood_by_hour
-- (happy, neutral, surprise, negative), with the mean share of each visitor's frames read as
-- happy. Visitors analysed by a model without an emotion head are left out; every band is
-- listed, with 0 where nobody falls in it.
--
-- Parameters: $from, $to (DATE, inclusive), $camera (camera id), NULL = no filter; $age_bands.
-- @chart: bar x=band y=happy,neutral,surprise,negative xlabel=age_group_(years) ylabel=visitors
-- @caption: The visitors of each age group by the mood their faces showed most: happy, neutral,
--   surprised, or negative (angry, disgusted, afraid or sad).
-- @order: 36

WITH people AS (
    SELECT age, emotion, happy_share
    FROM visitors
    WHERE emotion IS NOT NULL
      AND in_period(date, camera, $from, $to, $camera)
)
SELECT
    b.band,
    count(people.emotion) AS visitors,
    count(people.emotion) FILTER (WHERE mood_group(people.emotion) = 'happy') AS happy,
    count(people.emotion) FILTER (WHERE mood_group(people.emotion) = 'neutral') AS neutral,
    count(people.emotion) FILTER (WHERE mood_group(people.emotion) = 'surprise') AS surprise,
    count(people.emotion) FILTER (WHERE mood_group(people.emotion) = 'negative') AS negative,
    round(100 * avg(people.happy_share), 1) AS happy_frames_pct
FROM band_table($age_bands) AS b
LEFT JOIN people ON in_band(people.age, b.lo, b.hi)
GROUP BY b.band_no, b.band
ORDER BY b.band_no
