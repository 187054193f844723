-- A web-service token's own scope, narrower than its service's: the function names it may call,
-- space-separated (as Moodle's rest_api_tokens.scopes). Set on personal access tokens only;
-- NULL means every function of the token's service.
ALTER TABLE user_keys ADD COLUMN function_scope TEXT;
