-- Unique people and returning visits per day
--
-- Per day, over the visitors analysed with cross-video identity on (identity.enabled: a
-- per-day pseudonymous person_id, random and not derived from the face, shared by one person's
-- visits among the videos of one run): visits, distinct people, returning visits (a person's
-- visits after their first that day) and visits per person. Days analysed without identity
-- have no person ids and are left out. Person ids of two runs are never linked, so a day
-- analysed in two runs counts its returning visitors within each run only.
--
-- Parameters: $from, $to (DATE, inclusive) and $camera (camera id); NULL means no filter.
-- @chart: bar x=date y=visits,people xlabel=day ylabel=count
-- @caption: How many visits each day brought and how many different people made them; the
--   gap between the two is people who came back. People are told apart by their faces during
--   the night's analysis only: no face or face template is kept.
-- @order: 39

WITH visits AS (
    SELECT
        date,
        person_id,
        row_number() OVER (PARTITION BY date, person_id ORDER BY start_time) AS nth
    FROM visitors
    WHERE person_id IS NOT NULL
      AND ($from IS NULL OR date >= $from)
      AND ($to IS NULL OR date <= $to)
      AND ($camera IS NULL OR camera = $camera)
)
SELECT
    date,
    count(*) AS visits,
    count(DISTINCT person_id) AS people,
    count(*) FILTER (WHERE nth > 1) AS returning_visits,
    round(count(*) / count(DISTINCT person_id), 2) AS visits_per_person
FROM visits
GROUP BY date
ORDER BY date
