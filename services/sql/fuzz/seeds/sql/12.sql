SELECT h3_cell(st_point(lon, lat), 3) AS cell, count(*) AS count,
                  avg(attr_f64(attributes, 'mag')) AS mag_mean, max(attr_f64(attributes, 'mag')) AS mag_max,
                  st_point(avg(lon), avg(lat)) AS geometry FROM observations GROUP BY cell
