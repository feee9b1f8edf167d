using Dapper;
using Npgsql;

namespace Coordinator.Grains.Gemini;

/// <summary>A conversation of the Lightning agent API's <c>/api/gemini/conversations</c>.</summary>
public sealed class Conversation
{
    public long Id { get; init; }
    public string Title { get; init; } = "";
    public DateTime CreatedAt { get; init; }
}

/// <summary>A stored message: what the client sent (<c>user</c>) or a grid job's whole reply (<c>assistant</c>).</summary>
public sealed class ConversationMessage
{
    public long Id { get; init; }
    public long ConversationId { get; init; }
    public string Role { get; init; } = "";
    public string Content { get; init; } = "";
    public DateTime CreatedAt { get; init; }
}

/// <summary>The roles a stored message may have (migration 0018 checks them).</summary>
public static class MessageRoles
{
    public const string User = "user";
    public const string Assistant = "assistant";
}

/// <summary>
/// Conversations and their messages (migration 0018). Every statement is scoped to the caller's account: another
/// account's conversation is not found, exactly like one that does not exist.
/// </summary>
public sealed class ConversationStore(NpgsqlDataSource dataSource)
{
    private const string ConversationColumns = "id, title, created_at";
    private const string MessageColumns = "id, conversation_id, role, content, created_at";

    public async Task<Conversation> CreateAsync(long accountId, string title, CancellationToken cancellationToken = default)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        return await connection.QuerySingleAsync<Conversation>(new CommandDefinition($"""
            INSERT INTO gemini_conversations (account_id, title) VALUES (@accountId, @title) RETURNING {ConversationColumns}
            """, new { accountId, title }, cancellationToken: cancellationToken));
    }

    /// <summary>The account's conversations, newest first.</summary>
    public async Task<IReadOnlyList<Conversation>> ListAsync(long accountId, CancellationToken cancellationToken = default)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        return (await connection.QueryAsync<Conversation>(new CommandDefinition($"""
            SELECT {ConversationColumns} FROM gemini_conversations WHERE account_id = @accountId ORDER BY id DESC
            """, new { accountId }, cancellationToken: cancellationToken))).AsList();
    }

    public async Task<Conversation?> GetAsync(long accountId, long conversationId, CancellationToken cancellationToken = default)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        return await connection.QuerySingleOrDefaultAsync<Conversation>(new CommandDefinition($"""
            SELECT {ConversationColumns} FROM gemini_conversations WHERE id = @conversationId AND account_id = @accountId
            """, new { accountId, conversationId }, cancellationToken: cancellationToken));
    }

    /// <summary>The conversation's messages in the order they were stored, or null when the account has no such conversation.</summary>
    public async Task<IReadOnlyList<ConversationMessage>?> MessagesAsync(long accountId, long conversationId, CancellationToken cancellationToken = default)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        // One statement: the conversation's row (found or not) joined to its messages, so no delete can slip between two reads.
        var rows = (await connection.QueryAsync<ConversationMessage>(new CommandDefinition("""
            SELECT m.id, c.id AS conversation_id, m.role, m.content, m.created_at
            FROM gemini_conversations c LEFT JOIN gemini_messages m ON m.conversation_id = c.id
            WHERE c.id = @conversationId AND c.account_id = @accountId
            ORDER BY m.id
            """, new { accountId, conversationId }, cancellationToken: cancellationToken))).AsList();
        if (rows.Count == 0) return null;
        // A conversation without messages is one row of nulls from the outer join.
        return rows[0].Id == 0 ? [] : rows;
    }

    /// <summary>Deletes the conversation and its messages; false when the account has no such conversation.</summary>
    public async Task<bool> DeleteAsync(long accountId, long conversationId, CancellationToken cancellationToken = default)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        return await connection.ExecuteAsync(new CommandDefinition("""
            DELETE FROM gemini_conversations WHERE id = @conversationId AND account_id = @accountId
            """, new { accountId, conversationId }, cancellationToken: cancellationToken)) == 1;
    }

    /// <summary>Adds a message at the end of the conversation; null when the account has no such conversation (any more).</summary>
    public async Task<ConversationMessage?> AddMessageAsync(long accountId, long conversationId, string role, string content, CancellationToken cancellationToken = default)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        return await connection.QuerySingleOrDefaultAsync<ConversationMessage>(new CommandDefinition($"""
            INSERT INTO gemini_messages (conversation_id, role, content)
            SELECT id, @role, @content FROM gemini_conversations WHERE id = @conversationId AND account_id = @accountId
            RETURNING {MessageColumns}
            """, new { accountId, conversationId, role, content }, cancellationToken: cancellationToken));
    }
}
