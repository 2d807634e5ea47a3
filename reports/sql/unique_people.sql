-- Unique people and returning visits per day
--
-- Per day analysed with cross-video identity on (identity.enabled: a per-day pseudonymous
-- person_id, random and not derived from the face, shared by one person's visits among the
-- videos of one run): visits, distinct people, returning visits (a person's visits after their
-- first that day) and visits per person. A visitor without a person id on such a day (no face
-- of theirs was frontal or large enough to compare) counts as a person of their own. Days
-- without any person id are left out. Person ids of two runs are never linked, so a day
-- analysed in two runs counts its returning visitors within each run only.
--
-- Parameters: $from, $to (DATE, inclusive) and $camera (camera id); NULL means no filter.
-- @chart: bar x=date y=visits,people xlabel=day ylabel=count
-- @caption: How many visits each day brought and how many different people made them; the
--   gap between the two is people who came back. People are told apart by their faces during
--   the night's analysis only: no face or face template is kept.
-- @order: 39

WITH selected AS (
    SELECT *
    FROM visitors
    WHERE in_period(date, camera, $from, $to, $camera)
),
visits AS (
    SELECT
        date,
        coalesce(person_id, video_id || ':' || track_id) AS person,
        row_number() OVER (
            PARTITION BY date, coalesce(person_id, video_id || ':' || track_id)
            ORDER BY start_time
        ) AS nth
    FROM selected
    WHERE date IN (SELECT date FROM selected WHERE person_id IS NOT NULL)
)
SELECT
    date,
    count(*) AS visits,
    count(DISTINCT person) AS people,
    count(*) FILTER (WHERE nth > 1) AS returning_visits,
    round(count(*) / count(DISTINCT person), 2) AS visits_per_person
FROM visits
GROUP BY date
ORDER BY date
