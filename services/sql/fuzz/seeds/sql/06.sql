SELECT feed, avg(lon) AS count FROM observations GROUP BY feed
