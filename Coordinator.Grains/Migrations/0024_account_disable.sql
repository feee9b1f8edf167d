-- 0024: an operator disables and enables accounts (issue #19, operator surfaces): when, and why, for the cluster view
-- and for support. accounts.disabled (0001) stays the flag every front door checks.
ALTER TABLE accounts ADD COLUMN disabled_at timestamptz;
ALTER TABLE accounts ADD COLUMN disabled_reason text;

COMMENT ON COLUMN accounts.disabled IS
    'Set by an operator (POST /operator/accounts/{id}/disable): the account''s keys are refused on every front door, '
    'its workers'' polls too, and its pending jobs were cancelled when it was disabled.';
COMMENT ON COLUMN accounts.disabled_at IS 'When an operator last disabled the account; null while it has never been, kept after it is enabled again.';
COMMENT ON COLUMN accounts.disabled_reason IS 'The operator''s note on the last disable (free text, at most 500 characters); never shown to the account.';
