using System.Text.Json;
using Coordinator.Grains.Accounting;
using Coordinator.Grains.Dispatch;
using Dapper;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Npgsql;

namespace Coordinator.Grains.Billing;

public sealed record AccountBilling(string Plan, string? CustomerId, string? PaymentMethodId);

public enum WebhookOutcome
{
    Applied,
    /// <summary>This event id was processed before; nothing changed.</summary>
    Duplicate,
    /// <summary>A type we do not act on, or one about an account we do not know.</summary>
    Ignored,
}

/// <summary>Plans, accounts' Stripe state, and the webhook events that change them.</summary>
public sealed partial class BillingStore(
    NpgsqlDataSource dataSource, TimeProvider time, IGrainFactory grains, Dispatchers dispatchers, IOptions<BillingOptions> options, ILogger<BillingStore> logger)
{
    private static readonly HashSet<string> LiveSubscriptionStatuses = new(StringComparer.Ordinal) { "active", "trialing", "past_due" };

    /// <summary>Writes the configured plans into <c>plans</c> (insert or update), at start-up.</summary>
    public async Task SyncPlansAsync(CancellationToken cancellationToken = default)
    {
        if (options.Value.Plans.Count == 0) return;
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        foreach (var plan in options.Value.Plans)
        {
            await connection.ExecuteAsync(new CommandDefinition("""
                INSERT INTO plans (id, name, daily_requests, daily_tokens, priority_boost, stripe_price_id)
                VALUES (@Id, COALESCE(@Name, @Id), @DailyRequests, @DailyTokens, @PriorityBoost, @PriceId)
                ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, daily_requests = EXCLUDED.daily_requests,
                    daily_tokens = EXCLUDED.daily_tokens, priority_boost = EXCLUDED.priority_boost, stripe_price_id = EXCLUDED.stripe_price_id
                """, plan, cancellationToken: cancellationToken));
        }
    }

    public async Task<AccountBilling> GetAsync(long accountId, CancellationToken cancellationToken = default)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        return await connection.QuerySingleAsync<AccountBilling>(new CommandDefinition(
            "SELECT plan, stripe_customer_id AS customer_id, stripe_payment_method_id AS payment_method_id FROM accounts WHERE id = @accountId",
            new { accountId }, cancellationToken: cancellationToken));
    }

    /// <summary>The Stripe Price of a plan that can be bought; null when there is no such plan.</summary>
    public async Task<string?> PriceOfAsync(string planId, CancellationToken cancellationToken = default)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        return await connection.QuerySingleOrDefaultAsync<string>(new CommandDefinition(
            "SELECT stripe_price_id FROM plans WHERE id = @planId AND stripe_price_id IS NOT NULL", new { planId }, cancellationToken: cancellationToken));
    }

    /// <summary>
    /// Applies one verified webhook event, exactly once per event id: checkout completion links the Stripe customer;
    /// subscription events set the account's plan (and with it quota and default priority) and its payment method.
    /// </summary>
    public async Task<WebhookOutcome> ApplyAsync(JsonElement stripeEvent, CancellationToken cancellationToken = default)
    {
        var eventId = stripeEvent.GetProperty("id").GetString()!;
        var type = stripeEvent.GetProperty("type").GetString()!;
        var data = stripeEvent.GetProperty("data").GetProperty("object");

        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        var first = await connection.ExecuteAsync(new CommandDefinition(
            "INSERT INTO stripe_events (id, type, received_at) VALUES (@eventId, @type, @now) ON CONFLICT (id) DO NOTHING",
            new { eventId, type, now = time.GetUtcNow() }, transaction, cancellationToken: cancellationToken));
        if (first == 0) return WebhookOutcome.Duplicate;

        long? accountId = type switch
        {
            "checkout.session.completed" => await LinkCustomerAsync(connection, transaction, data, cancellationToken),
            "customer.subscription.created" or "customer.subscription.updated" or "customer.subscription.deleted" =>
                await ApplySubscriptionAsync(connection, transaction, type, data, cancellationToken),
            _ => null,
        };
        IReadOnlyList<QueuedJob> released = [];
        if (accountId is { } changed)
        {
            // A new plan may lift a limit reached today: release the holds; the account's grain holds again if still over.
            released = await Quotas.ReleaseAccountAsync(connection, transaction, changed, cancellationToken);
        }
        await transaction.CommitAsync(cancellationToken);

        if (accountId is { } account)
        {
            await dispatchers.AddAsync(released);
            await grains.GetGrain<IAccountGrain>(account).PlanChangedAsync();
            LogApplied(logger, eventId, type, account);
            return WebhookOutcome.Applied;
        }
        return WebhookOutcome.Ignored;
    }

    private static async Task<long?> LinkCustomerAsync(NpgsqlConnection connection, NpgsqlTransaction transaction, JsonElement session, CancellationToken cancellationToken)
    {
        if (!long.TryParse(Text(session, "client_reference_id") ?? Text(session.TryGetProperty("metadata", out var m) ? m : default, "account_id"), out var accountId)) return null;
        return await connection.QuerySingleOrDefaultAsync<long?>(new CommandDefinition("""
            UPDATE accounts SET stripe_customer_id = COALESCE(@customer, stripe_customer_id),
                                stripe_subscription_id = COALESCE(@subscription, stripe_subscription_id)
            WHERE id = @accountId RETURNING id
            """, new { accountId, customer = IdOf(session, "customer"), subscription = IdOf(session, "subscription") }, transaction, cancellationToken: cancellationToken));
    }

    private async Task<long?> ApplySubscriptionAsync(NpgsqlConnection connection, NpgsqlTransaction transaction, string type, JsonElement subscription, CancellationToken cancellationToken)
    {
        var customer = IdOf(subscription, "customer");
        var metadataAccount = long.TryParse(Text(subscription.TryGetProperty("metadata", out var m) ? m : default, "account_id"), out var id) ? id : 0;
        var status = Text(subscription, "status") ?? "";
        string? price = null;
        if (subscription.TryGetProperty("items", out var items) && items.TryGetProperty("data", out var lines) && lines.GetArrayLength() > 0)
        {
            price = IdOf(lines[0], "price");
        }
        var live = type != "customer.subscription.deleted" && LiveSubscriptionStatuses.Contains(status);
        var plan = live && price is not null
            ? await connection.QuerySingleOrDefaultAsync<string>(new CommandDefinition(
                "SELECT id FROM plans WHERE stripe_price_id = @price", new { price }, transaction, cancellationToken: cancellationToken))
            : "free";
        if (plan is null)
        {
            LogUnknownPrice(logger, price ?? "(none)");
            return null;
        }
        return await connection.QuerySingleOrDefaultAsync<long?>(new CommandDefinition("""
            UPDATE accounts SET plan = @plan,
                stripe_customer_id = COALESCE(@customer, stripe_customer_id),
                stripe_subscription_id = CASE WHEN @live THEN @subscriptionId ELSE NULL END,
                stripe_payment_method_id = CASE WHEN @live THEN COALESCE(@paymentMethod, stripe_payment_method_id) ELSE stripe_payment_method_id END
            WHERE id = CASE WHEN @metadataAccount > 0 THEN @metadataAccount
                            ELSE (SELECT id FROM accounts WHERE stripe_customer_id = @customer) END
            RETURNING id
            """, new { plan, customer, live, subscriptionId = Text(subscription, "id"), paymentMethod = IdOf(subscription, "default_payment_method"), metadataAccount },
            transaction, cancellationToken: cancellationToken));
    }

    private static string? Text(JsonElement element, string property) =>
        element.ValueKind == JsonValueKind.Object && element.TryGetProperty(property, out var value) && value.ValueKind == JsonValueKind.String ? value.GetString() : null;

    /// <summary>Stripe fields that may be an id string or an expanded object with an <c>id</c>.</summary>
    private static string? IdOf(JsonElement element, string property) =>
        element.ValueKind == JsonValueKind.Object && element.TryGetProperty(property, out var value)
            ? value.ValueKind switch
            {
                JsonValueKind.String => value.GetString(),
                JsonValueKind.Object => Text(value, "id"),
                _ => null,
            }
            : null;

    [LoggerMessage(Level = LogLevel.Information, Message = "Stripe event {EventId} ({Type}) applied to account {AccountId}")]
    private static partial void LogApplied(ILogger logger, string eventId, string type, long accountId);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Stripe subscription for price {Price}, which no configured plan sells; ignored")]
    private static partial void LogUnknownPrice(ILogger logger, string price);
}
