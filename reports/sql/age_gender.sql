-- Visitors by age group and gender
--
-- Visitors per age band, split by gender, with each band's share of all visitors. Bands are
-- computed (in _macros.sql) from the estimated `age` (years), not taken from the stored `age_band`, so they
-- can be changed per run: $age_bands is a list of labels, each '<N' (under N), 'A-B' (A to B
-- years inclusive, i.e. A <= age < B+1) or 'N+' (N and over). The default is
-- ['0-9', '10-19', '20-29', '30-39', '40-49', '50-59', '60+'] (`--age-bands` on the command line).
-- Every band is listed, with 0 where no visitor falls in it; ages outside all bands are left out.
--
-- Parameters: $from, $to (DATE, inclusive), $camera (camera id), NULL = no filter; $age_bands.
-- @chart: bar x=band y=female,male xlabel=age_group_(years) ylabel=visitors
-- @caption: Visitors in each age group, women and men side by side. Ages are estimated from
--   faces (see the note on the model above): read the overall shape rather than one bar, as a
--   visitor near the edge of a group may be counted in the next one.
-- @order: 30

SELECT * FROM age_gender_by_bands($age_bands, $from, $to, $camera)
