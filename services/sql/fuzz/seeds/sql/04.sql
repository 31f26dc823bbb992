SELECT feed, count(*) AS count FROM observations WHERE speeed > 3 GROUP BY feed
