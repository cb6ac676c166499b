#include "ringbuf.h"

void rb_init(struct ringbuf *rb)
{
    rb->head = 0;
    rb->tail = 0;
    rb->count = 0;
}

int rb_push(struct ringbuf *rb, uint8_t byte)
{
    if (rb->count == RB_CAPACITY)
        return -1;
    rb->data[rb->head] = byte;
    rb->head = (rb->head + 1) % RB_CAPACITY;
    rb->count++;
    return 0;
}

int rb_pop(struct ringbuf *rb, uint8_t *byte)
{
    if (rb->count == 0)
        return -1;
    *byte = rb->data[rb->tail];
    rb->tail = (rb->tail + 1) % RB_CAPACITY;
    rb->count--;
    return 0;
}
