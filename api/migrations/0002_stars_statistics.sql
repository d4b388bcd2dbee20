-- The planner keeps no statistics for an expression that appears only in partial
-- indexes, so it guessed 0.5% for `half_stars / 2 = n` and, on first pages of courses
-- with a few hundred reviews, chose a bitmap scan plus a sort over the stars indexes.
-- Extended statistics on the expression give it the real share (about a fifth), and
-- every stars page is an index range scan again (tests/it/explain.rs).
CREATE STATISTICS reviews_stars ON (half_stars / 2) FROM reviews;
