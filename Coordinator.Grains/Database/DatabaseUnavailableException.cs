using System.Net.Sockets;
using Npgsql;

namespace Coordinator.Grains.Database;

/// <summary>
/// PostgreSQL could not be reached (down, restarting, out of connections). Grains raise this in place of the driver's
/// exception, which does not survive the trip between silos, so that the front end answers 503 wherever the grain ran.
/// </summary>
[GenerateSerializer]
public sealed class DatabaseUnavailableException : Exception
{
    public DatabaseUnavailableException() : base("PostgreSQL is not reachable") { }

    public DatabaseUnavailableException(string message) : base(message) { }

    public DatabaseUnavailableException(string message, Exception innerException) : base(message, innerException) { }

    /// <summary>Whether an exception means the database is unavailable, rather than a fault in the request or the code.</summary>
    public static bool Describes(Exception exception) => exception switch
    {
        DatabaseUnavailableException => true,
        NpgsqlException { InnerException: SocketException or TimeoutException or IOException or EndOfStreamException } => true,
        NpgsqlException npgsql when npgsql.IsTransient => true,
        PostgresException { SqlState: "57P01" or "57P02" or "57P03" or "53300" or "3D000" } => true, // shutdown, crash, starting, too many connections, database gone
        TimeoutException or SocketException => true,
        InvalidOperationException { InnerException: { } inner } => Describes(inner),
        AggregateException { InnerExceptions: [var only] } => Describes(only),
        _ => false,
    };
}

/// <summary>Turns the driver's unavailability exceptions into <see cref="DatabaseUnavailableException"/> on every grain call.</summary>
public sealed class DatabaseUnavailableFilter : IIncomingGrainCallFilter
{
    public async Task Invoke(IIncomingGrainCallContext context)
    {
        try
        {
            await context.Invoke();
        }
        catch (Exception exception) when (exception is not DatabaseUnavailableException && Describes(exception))
        {
            throw new DatabaseUnavailableException($"PostgreSQL is not reachable: {exception.Message}");
        }
    }

    private static bool Describes(Exception exception) => DatabaseUnavailableException.Describes(exception);
}
