SELECT h3_cell(st_point(lon, lat), 7) AS cell, track, min(time) AS first_seen, max(time) AS last_seen,
       count(*) AS count, max(attr_f64(attributes, 'speed')) AS max_speed
FROM observations WHERE track IS NOT NULL GROUP BY cell, track
