DROP INDEX user_keys_unrevoked_type_created;
DROP TABLE client_alerts;
