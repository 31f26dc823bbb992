SELECT id AS key, st_x(NULL) AS a, st_point(NULL, lat) AS p, st_geohash(st_point(lon, lat), NULL) AS b,
         h3_cell(NULL, 5) AS c, st_distance(st_point(lon, lat), NULL) AS d, st_within(NULL, NULL) AS e,
         attr_f64(NULL, 'speed') AS f, attr_str(attributes, NULL) AS g FROM observations LIMIT 3
