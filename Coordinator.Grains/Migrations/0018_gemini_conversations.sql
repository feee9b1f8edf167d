-- 0018: the Lightning agent API's conversations (issue #18, the spec's `gemini` paths): chats whose replies are grid jobs.
-- Each conversation belongs to the account whose key created it; every read and delete is scoped by account_id.

CREATE TABLE gemini_conversations (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id bigint      NOT NULL REFERENCES accounts (id),
    title      text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE gemini_conversations IS 'Conversations of /api/gemini/conversations (issue #18); private to their account.';

-- The list: an account's conversations, newest first.
CREATE INDEX gemini_conversations_account ON gemini_conversations (account_id, id);

CREATE TABLE gemini_messages (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- Deleting a conversation deletes its messages with it.
    conversation_id bigint      NOT NULL REFERENCES gemini_conversations (id) ON DELETE CASCADE,
    role            text        NOT NULL CHECK (role IN ('user', 'assistant')),
    content         text        NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE gemini_messages IS 'Messages of a conversation in the order they were stored (id order): the history sent to the worker as chat messages.';
COMMENT ON COLUMN gemini_messages.role IS 'user: what the client sent; assistant: a grid job''s whole output, stored once the job completed.';

-- A conversation's history in order, and the cascade's lookup.
CREATE INDEX gemini_messages_conversation ON gemini_messages (conversation_id, id);
