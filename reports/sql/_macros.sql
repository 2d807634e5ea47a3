-- Shared SQL of the reports (not a report: files starting with "_" are run before every report).
--
-- in_period(day, cam_col, date_from, date_to, cam): whether a row of day ``day`` and camera
-- ``cam_col`` is in the report's period and camera; NULL date_from / date_to / cam mean no
-- filter. Every report filters with in_period(date, camera, $from, $to, $camera).
--
-- band_table(bands): one row per band label, in order: band_no, band, and the ages [lo, hi) it
-- holds (NULL: open). Each label is '<N' (under N), 'A-B' (A to B years inclusive, i.e.
-- A <= age < B+1) or 'N+' (N and over); in_band(age, lo, hi) tests an age against a row.
--
-- age_gender_by_bands(bands, date_from, date_to, cam): visitors per age band and gender, each
-- band's share of all visitors. Bands are computed from the estimated `age` (years), not taken
-- from the stored `age_band`: each label is '<N' (under N), 'A-B' (A to B years inclusive, i.e.
-- A <= age < B+1) or 'N+' (N and over). Every band is listed, with 0 where no visitor falls in
-- it; ages outside all bands are left out. NULL date_from / date_to / cam mean no filter.

CREATE OR REPLACE MACRO in_period(day, cam_col, date_from, date_to, cam) AS
    (date_from IS NULL OR day >= date_from)
    AND (date_to IS NULL OR day <= date_to)
    AND (cam IS NULL OR cam_col = cam);

CREATE OR REPLACE MACRO band_table(bands) AS TABLE
    SELECT
        b.i AS band_no,
        b.label AS band,
        CASE
            WHEN b.label LIKE '<%' THEN NULL
            ELSE CAST(regexp_extract(b.label, '^(\d+)', 1) AS DOUBLE)
        END AS lo,
        CASE
            WHEN b.label LIKE '<%' THEN CAST(substr(b.label, 2) AS DOUBLE)
            WHEN b.label LIKE '%+' THEN NULL
            ELSE CAST(regexp_extract(b.label, '-(\d+)$', 1) AS DOUBLE) + 1
        END AS hi
    FROM (SELECT unnest(bands) AS label, generate_subscripts(bands, 1) AS i) AS b;

-- second_buckets(edges): one row per time bucket from ascending edges in seconds: bucket_no,
-- [lo, hi) (hi NULL: open) and its label ('5-10 s', '60+ s').
CREATE OR REPLACE MACRO second_buckets(edges) AS TABLE
    WITH e AS (
        SELECT e.i AS bucket_no, e.lo, lead(e.lo) OVER (ORDER BY e.i) AS hi
        FROM (
            SELECT
                unnest(CAST(edges AS DOUBLE[])) AS lo,
                generate_subscripts(edges, 1) AS i
        ) AS e
    )
    SELECT
        bucket_no,
        lo,
        hi,
        CASE WHEN hi IS NULL THEN printf('%g+ s', lo) ELSE printf('%g-%g s', lo, hi) END AS bucket
    FROM e;

CREATE OR REPLACE MACRO in_band(age, lo, hi) AS
    (lo IS NULL OR age >= lo) AND (hi IS NULL OR age < hi);

-- Emotions grouped for charts: the two calm readings, surprise, and the four negative ones.
CREATE OR REPLACE MACRO mood_group(emotion) AS
    CASE
        WHEN emotion IN ('happy', 'neutral', 'surprise') THEN emotion
        WHEN emotion IS NULL THEN NULL
        ELSE 'negative'
    END;

CREATE OR REPLACE MACRO age_gender_by_bands(bands, date_from, date_to, cam) AS TABLE
    WITH bands AS (SELECT * FROM band_table(bands)),
    people AS (
        SELECT age, gender
        FROM visitors
        WHERE in_period(date, camera, date_from, date_to, cam)
    )
    SELECT
        bands.band,
        count(*) FILTER (WHERE people.gender = 'female') AS female,
        count(*) FILTER (WHERE people.gender = 'male') AS male,
        count(people.age) AS visitors,
        round(100.0 * count(people.age) / nullif((SELECT count(*) FROM people), 0), 1)
            AS share_pct
    FROM bands
    LEFT JOIN people ON in_band(people.age, bands.lo, bands.hi)
    GROUP BY bands.band_no, bands.band
    ORDER BY bands.band_no;
