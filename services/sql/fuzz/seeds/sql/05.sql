SELECT no_such_function(lon) FROM observations
