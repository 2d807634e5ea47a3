-- Age band x gender
--
-- Visitors per age band, split by gender, with each band's share of all visitors. Bands are
-- computed here from the estimated `age` (years), not taken from the stored `age_band`, so they
-- can be changed per run: $age_bands is a list of labels, each '<N' (under N), 'A-B' (A to B
-- years inclusive, i.e. A <= age < B+1) or 'N+' (N and over). The default is
-- ['0-9', '10-19', '20-29', '30-39', '40-49', '50-59', '60+'] (`--age-bands` on the command line).
-- Every band is listed, with 0 where no visitor falls in it; ages outside all bands are left out.
--
-- Parameters: $from, $to (DATE, inclusive), $camera (camera id), NULL = no filter; $age_bands.
-- @chart: bar x=band y=female,male ylabel=visitors
-- @order: 30

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
    FROM (SELECT unnest($age_bands) AS label, generate_subscripts($age_bands, 1) AS i) AS b
),
people AS (
    SELECT age, gender
    FROM visitors
    WHERE ($from IS NULL OR date >= $from)
      AND ($to IS NULL OR date <= $to)
      AND ($camera IS NULL OR camera = $camera)
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
ORDER BY bands.band_no
