DROP INDEX user_keys_last_used_order;
