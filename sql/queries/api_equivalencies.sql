-- The API: what an amount of gCO2eq equals in everyday terms.
SELECT e.equivalency, e.description, e.unit, e.amount FROM reporting.equivalencies(%(gco2eq)s) e
ORDER BY e.equivalency
