SELECT feed AS bin FROM observations
