SELECT feed, count(*) AS count FROM observations GROUP BY feed
