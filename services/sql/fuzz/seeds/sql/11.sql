SELECT date_bin(INTERVAL '1 minute', time) AS minute, count(*) AS count FROM observations GROUP BY minute
