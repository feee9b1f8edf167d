using System.Buffers;
using System.Security.Cryptography;
using System.Text.Json;
using Coordinator.Grains.Jobs;
using Microsoft.AspNetCore.OpenApi;
using Microsoft.OpenApi;

namespace Coordinator.Api.Jobs;

/// <summary>
/// The <c>Idempotency-Key</c> header of <c>POST /jobs</c>, as Stripe has it: a client sends a fresh key (a UUID) with
/// each job it means to create and the same key when it retries, so a retry after a lost answer gets the first job.
/// </summary>
public static class IdempotencyKeys
{
    public const string Header = "Idempotency-Key";

    /// <summary>Shown in the served OpenAPI document for the header.</summary>
    public const string Description =
        "A unique value (a UUID) per job, sent again unchanged when the request is retried. For 24 hours the same key of " +
        "the same account answers the job it made (201, the job as it is now) instead of creating another one; the same " +
        "key with a different request body is refused (422). At most 255 printable ASCII characters.";

    /// <summary>The request's key (null without the header), or why it is not usable.</summary>
    public static (string? Key, string? Problem) Read(HttpRequest request)
    {
        if (!request.Headers.TryGetValue(Header, out var values)) return (null, null);
        if (values.Count != 1) return (null, $"send one {Header} header, not {values.Count}");
        var value = values[0] ?? "";
        return Problem(value) is { } problem ? (null, problem) : (value, null);
    }

    /// <summary>Lists the optional header on the operation (an addition to the spec, as Stripe's).</summary>
    public static Task DescribeAsync(OpenApiOperation operation, OpenApiOperationTransformerContext context, CancellationToken cancellationToken)
    {
        operation.Parameters ??= [];
        operation.Parameters.Add(new OpenApiParameter
        {
            Name = Header,
            In = ParameterLocation.Header,
            Required = false,
            Description = Description,
            Schema = new OpenApiSchema { Type = JsonSchemaType.String, MinLength = 1, MaxLength = IdempotencyKey.MaxLength },
        });
        return Task.CompletedTask;
    }

    private static string? Problem(string value)
    {
        if (value.Length == 0) return $"{Header} must not be empty: send a unique value (a UUID) per job, or no header";
        if (value.Length > IdempotencyKey.MaxLength) return $"{Header} must be at most {IdempotencyKey.MaxLength} characters";
        // Printable ASCII only: the value is compared byte for byte, and a header could not carry much else reliably.
        if (value.Any(c => c is < ' ' or > '~')) return $"{Header} must consist of printable ASCII characters";
        return null;
    }

    /// <summary>
    /// SHA-256 of the request body in canonical form: object members sorted by name, no insignificant whitespace, so a
    /// retry that serialises the same request differently still matches. Numbers and strings are compared as sent.
    /// </summary>
    public static byte[] RequestHash(JsonElement body)
    {
        var buffer = new ArrayBufferWriter<byte>();
        using (var writer = new Utf8JsonWriter(buffer))
        {
            WriteCanonical(writer, body);
        }
        return SHA256.HashData(buffer.WrittenSpan);
    }

    private static void WriteCanonical(Utf8JsonWriter writer, JsonElement element)
    {
        switch (element.ValueKind)
        {
            case JsonValueKind.Object:
                writer.WriteStartObject();
                foreach (var member in element.EnumerateObject().OrderBy(m => m.Name, StringComparer.Ordinal))
                {
                    writer.WritePropertyName(member.Name);
                    WriteCanonical(writer, member.Value);
                }
                writer.WriteEndObject();
                break;
            case JsonValueKind.Array:
                writer.WriteStartArray();
                foreach (var item in element.EnumerateArray()) WriteCanonical(writer, item);
                writer.WriteEndArray();
                break;
            default:
                element.WriteTo(writer);
                break;
        }
    }
}
