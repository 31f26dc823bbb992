SELECT st_geohash(st_point(lon, lat), 5) AS cell, feed,
       count(*) AS count, avg(attr_f64(attributes, 'speed')) AS avg_speed
FROM observations
GROUP BY cell, feed
