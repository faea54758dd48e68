"""A stand-in for your application: asks the (mock) API one question and prints the answer."""

from openai import OpenAI

client = OpenAI()  # OPENAI_BASE_URL and OPENAI_API_KEY come from the environment
reply = client.chat.completions.create(
    model="foxora-1",
    messages=[{"role": "user", "content": "Summarise SOLID in one paragraph."}],
)
print(reply.choices[0].message.content)
