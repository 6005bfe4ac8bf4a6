"""The WhatsApp channel over ACS Advanced Messaging: event parsing (`events`), the delivery log and the 24-hour
window (`delivery`), and the service that ties them to the conversation core and the Messenger (`service`)."""
