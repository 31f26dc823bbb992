SELECT feed AS key, count(*) AS count, window_start, window_end,
       avg(st_distance(st_point(lon, lat), st_point(10.4, 63.4))) AS mean_m,
       sum(CASE WHEN st_within(st_point(lon, lat), 'POLYGON((10 63,11 63,11 64,10 64,10 63))') THEN 1 ELSE 0 END) AS inside
FROM observations GROUP BY feed, window_start, window_end
