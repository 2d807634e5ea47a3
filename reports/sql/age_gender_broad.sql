-- Visitors by broad age group and gender
--
-- Visitors per age band, split by gender, with each band's share of all visitors. Bands are
-- computed (in _macros.sql) from the estimated `age` (years), not taken from the stored `age_band`, so they
-- can be changed per run: $broad_age_bands is a list of labels, each '<N' (under N), 'A-B'
-- (A to B years inclusive, i.e. A <= age < B+1) or 'N+' (N and over). The default is
-- ['<30', '30-59', '60+'] (`--broad-age-bands` on the command line). See also `age_gender`.
-- Every band is listed, with 0 where no visitor falls in it; ages outside all bands are left out.
--
-- Parameters: $from, $to (DATE, inclusive), $camera (camera id), NULL = no filter;
-- $broad_age_bands.
-- @chart: bar x=band y=female,male xlabel=age_group_(years) ylabel=visitors
-- @caption: The same visitors in a few broad age groups, women and men side by side. Broad
--   groups are less affected by errors in the estimated ages than the detailed ones.
-- @order: 31

SELECT * FROM age_gender_by_bands($broad_age_bands, $from, $to, $camera)
