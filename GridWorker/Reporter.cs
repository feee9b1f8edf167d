using System.Globalization;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;

namespace GridWorker;

/// <summary>
/// What the worker tells its operator: a readable line per event, or with <c>--json</c> one JSON object per line
/// (<c>time</c>, <c>level</c>, <c>event</c>, <c>message</c> and the event's fields). Never prompts or outputs.
/// </summary>
public sealed class Reporter(TextWriter output, bool json, TimeProvider time)
{
    private readonly Lock _lock = new();

    public void Info(string eventName, string message, params (string Name, object? Value)[] fields) => Write("info", eventName, message, fields);

    public void Warn(string eventName, string message, params (string Name, object? Value)[] fields) => Write("warn", eventName, message, fields);

    public void Error(string eventName, string message, params (string Name, object? Value)[] fields) => Write("error", eventName, message, fields);

    private void Write(string level, string eventName, string message, (string Name, object? Value)[] fields)
    {
        string line;
        if (json)
        {
            using var buffer = new MemoryStream();
            // Relaxed escaping: these lines go to terminals and log files, not into HTML ("+0.3450", not "\u002B0.3450").
            using (var writer = new Utf8JsonWriter(buffer, new JsonWriterOptions { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
            {
                writer.WriteStartObject();
                writer.WriteString("time", time.GetUtcNow());
                writer.WriteString("level", level);
                writer.WriteString("event", eventName);
                writer.WriteString("message", message);
                foreach (var (name, value) in fields)
                {
                    writer.WritePropertyName(name);
                    JsonSerializer.Serialize(writer, value, Json.Options);
                }
                writer.WriteEndObject();
            }
            line = Encoding.UTF8.GetString(buffer.ToArray());
        }
        else
        {
            var prefix = level switch { "warn" => "warning: ", "error" => "error: ", _ => "" };
            line = $"{time.GetLocalNow().ToString("HH:mm:ss", CultureInfo.InvariantCulture)} {prefix}{message}";
        }
        lock (_lock)
        {
            output.WriteLine(line);
            output.Flush();
        }
    }
}
