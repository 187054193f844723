DROP TABLE cache_instances;
DROP TABLE cache_generation;
