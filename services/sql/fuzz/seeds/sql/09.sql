SELECT count(*) AS count FROM observations
