DROP TABLE key_daily_uses;
