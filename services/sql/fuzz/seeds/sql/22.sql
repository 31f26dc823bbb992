SELECT attr_str(attributes, 'name') AS name, st_x(st_point(lon, lat)) AS x, st_y(st_point(lon, lat)) AS y
FROM observations WHERE attr_str(attributes, 'name') IS NOT NULL ORDER BY name LIMIT 10
