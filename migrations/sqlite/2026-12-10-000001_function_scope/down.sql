ALTER TABLE user_keys DROP COLUMN function_scope;
