"""Car API: a small FastAPI catalogue of cars on Postgres, released as several tags of one image."""
