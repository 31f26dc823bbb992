SELECT window_start, window_end, count(*) AS count FROM observations GROUP BY window_start, window_end
