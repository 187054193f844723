ALTER TABLE user_keys DROP COLUMN expiry_reported_at;
