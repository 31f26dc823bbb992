WITH t AS (SELECT track, lon, lat, time FROM observations WHERE track IS NOT NULL)
SELECT a.track AS key, count(*) AS count FROM t a JOIN t b ON a.track = b.track AND a.time < b.time GROUP BY a.track
