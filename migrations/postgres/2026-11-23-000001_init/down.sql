DROP TABLE audit_log;
DROP TABLE key_usage;
DROP TABLE user_keys;
DROP TABLE key_type_settings;
DROP TABLE service_functions;
DROP TABLE services;
DROP TABLE users;
