-- Shared SQL of the reports (not a report: files starting with "_" are run before every report).
--
-- age_gender_by_bands(bands, date_from, date_to, cam): visitors per age band and gender, each
-- band's share of all visitors. Bands are computed from the estimated `age` (years), not taken
-- from the stored `age_band`: each label is '<N' (under N), 'A-B' (A to B years inclusive, i.e.
-- A <= age < B+1) or 'N+' (N and over). Every band is listed, with 0 where no visitor falls in
-- it; ages outside all bands are left out. NULL date_from / date_to / cam mean no filter.

CREATE OR REPLACE MACRO age_gender_by_bands(bands, date_from, date_to, cam) AS TABLE
    WITH bands AS (
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
        FROM (SELECT unnest(bands) AS label, generate_subscripts(bands, 1) AS i) AS b
    ),
    people AS (
        SELECT age, gender
        FROM visitors
        WHERE (date_from IS NULL OR date >= date_from)
          AND (date_to IS NULL OR date <= date_to)
          AND (cam IS NULL OR camera = cam)
    )
    SELECT
        bands.band,
        count(*) FILTER (WHERE people.gender = 'female') AS female,
        count(*) FILTER (WHERE people.gender = 'male') AS male,
        count(people.age) AS visitors,
        round(100.0 * count(people.age) / nullif((SELECT count(*) FROM people), 0), 1)
            AS share_pct
    FROM bands
    LEFT JOIN people
        ON (bands.lo IS NULL OR people.age >= bands.lo)
       AND (bands.hi IS NULL OR people.age < bands.hi)
    GROUP BY bands.band_no, bands.band
    ORDER BY bands.band_no;
