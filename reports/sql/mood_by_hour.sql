-- Mood by hour of the day
--
-- Visitors per hour of the day (local wall-clock time of the moment a visitor was first seen)
-- by the emotion the model read most strongly over their frames (`emotion`: the largest of the
-- quality-weighted mean probabilities), grouped as happy, neutral, surprise and negative
-- (angry, disgust, fear, sad; mood_group in _macros.sql), and the mean share of each visitor's
-- frames read as happy (`happy_share`). Visitors analysed by a model without an emotion head
-- (emotion NULL) are left out; hours without such visitors too.
--
-- Parameters: $from, $to (DATE, inclusive) and $camera (camera id); NULL means no filter.
-- @chart: bar x=hour y=happy,neutral,surprise,negative xlabel=hour_of_the_day ylabel=visitors
-- @caption: The visitors of each hour of the day by the mood their faces showed most: happy,
--   neutral, surprised, or negative (angry, disgusted, afraid or sad). Facial expressions
--   are a rough signal, read from small faces: compare hours, not single visitors.
-- @order: 35

SELECT
    hour(start_time) AS hour,
    count(*) AS visitors,
    count(*) FILTER (WHERE mood_group(emotion) = 'happy') AS happy,
    count(*) FILTER (WHERE mood_group(emotion) = 'neutral') AS neutral,
    count(*) FILTER (WHERE mood_group(emotion) = 'surprise') AS surprise,
    count(*) FILTER (WHERE mood_group(emotion) = 'negative') AS negative,
    round(100 * avg(happy_share), 1) AS happy_frames_pct
FROM visitors
WHERE emotion IS NOT NULL
  AND in_period(date, camera, $from, $to, $camera)
GROUP BY hour
ORDER BY hour
