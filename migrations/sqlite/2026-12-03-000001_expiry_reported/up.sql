-- When an expired token was first refused with Moodle's "token expired" answer. Moodle deletes
-- the token then, so its next use answers "invalidtoken" and the app asks the person to sign in
-- again; here the row stays (the pages show it as expired) and this marks it as told.
ALTER TABLE user_keys ADD COLUMN expiry_reported_at TIMESTAMP;
