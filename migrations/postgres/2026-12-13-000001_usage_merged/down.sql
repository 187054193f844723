DROP TABLE key_usage_merged;
